"""Full-text search (https://hl7.org/fhir/R4/search.html#_text, #_content): the words a resource
is indexed by, the query syntax, and the predicate over `search_text`."""

from __future__ import annotations

from typing import Any

import asyncpg
import pytest

from flode.fhir.definitions import Definitions
from flode.fhir.errors import FhirError
from flode.store.indexer import IndexRows, insert_statement
from flode.store.params import text
from flode.store.sql import Args


@pytest.fixture(scope="module")
def extractor() -> text.Extractor:
    return text.Extractor(Definitions.load())


def narrative(xhtml: str) -> dict[str, str]:
    return {
        "status": "generated",
        "div": f'<div xmlns="http://www.w3.org/1999/xhtml">{xhtml}</div>',
    }


def test_the_narrative_is_its_text_without_tags_and_with_entities_resolved() -> None:
    div = narrative("<p>Hj&auml;rt<b>svikt</b></p>&amp; &#214;dem")["div"]
    assert text.narrative_text(div).split() == ["Hjärt", "svikt", "&", "Ödem"]


def test_words_are_case_folded_without_accents_split_at_punctuation_and_distinct() -> None:
    found = text.words(["Östersund, ÖSTERSUND!", "covid-19 Straße", "Ærø"])
    assert sorted(found) == ["19", "aero", "covid", "ostersund", "strasse"]


def test_words_written_with_combining_accents_are_the_same_words() -> None:
    assert text.words(["O\u0308stersund"]) == text.words(["Östersund"]) == ["ostersund"]


def test_a_long_word_is_cut_and_a_huge_text_is_cut_to_what_a_tsvector_holds() -> None:
    assert text.words(["x" * 1000]) == ["x" * text.MAX_WORD]
    many = text.words([" ".join(f"w{n:06}{'y' * 90}" for n in range(20_000))])
    assert 0 < len(many) < 20_000
    assert sum(len(w) + 6 for w in many) <= text.MAX_BYTES


def test_content_is_every_string_markdown_and_code_at_any_depth(
    extractor: text.Extractor,
) -> None:
    observation = {
        "resourceType": "Observation",
        "id": "idword",
        "meta": {"source": "http://sourceword.example", "tag": [{"display": "Taggad"}]},
        "status": "final",
        "code": {
            "coding": [{"system": "http://loinc.org", "code": "8867-4", "display": "Puls"}],
            "text": "Hjärtfrekvens",
        },
        "subject": {"reference": "Patient/refword", "display": "Åsa Öberg"},
        "effectiveDateTime": "2026-03-01",
        "valueString": "regelbunden",
        "note": [{"text": "**Vilo**puls"}],
        "extension": [{"url": "http://urlword.example", "valueString": "Tillägg"}],
        "component": [{"code": {"text": "Komponent"}, "valueCodeableConcept": {"text": "Djup"}}],
        "contained": [{"resourceType": "Patient", "name": [{"family": "Innesluten"}]}],
    }
    row = extractor.row(observation, narrative=True)
    assert row is not None
    narrative_words, content = row
    assert narrative_words is None
    assert content is not None
    assert set(content) == {
        "taggad",
        "final",
        "8867",
        "4",
        "puls",
        "hjartfrekvens",
        "asa",
        "oberg",
        "regelbunden",
        "vilo",
        "tillagg",
        "komponent",
        "djup",
        "innesluten",
    }


def test_ids_uris_dates_references_and_binary_data_are_not_content(
    extractor: text.Extractor,
) -> None:
    binary = {
        "resourceType": "DocumentReference",
        "id": "doc1",
        "status": "current",
        "content": [
            {
                "attachment": {
                    "contentType": "text/plain",
                    "data": "SGVqc2Fu",
                    "url": "http://example.org/doc",
                    "creation": "2026-01-01",
                    "title": "Epikris",
                }
            }
        ],
    }
    row = extractor.row(binary, narrative=True)
    assert row is not None
    assert set(row[1] or ()) == {"current", "text", "plain", "epikris"}


def test_the_narrative_is_in_both_columns(extractor: text.Extractor) -> None:
    patient = {
        "resourceType": "Patient",
        "text": narrative("<p>Hjärtsvikt sedan 2019</p>"),
        "gender": "female",
    }
    row = extractor.row(patient, narrative=True)
    assert row is not None
    assert sorted(row[0] or ()) == ["2019", "hjartsvikt", "sedan"]
    assert sorted(row[1] or ()) == ["2019", "female", "hjartsvikt", "sedan"]


def test_a_resource_without_narrative_support_indexes_content_only(
    extractor: text.Extractor,
) -> None:
    bundle = {
        "resourceType": "Bundle",
        "text": narrative("<p>ignored</p>"),
        "type": "collection",
        "entry": [{"resource": {"resourceType": "Patient", "text": narrative("<p>Inne</p>")}}],
    }
    row = extractor.row(bundle, narrative=False)
    assert row is not None
    assert row[0] is None
    assert "inne" in (row[1] or ())


def test_a_resource_with_no_words_has_no_row(extractor: text.Extractor) -> None:
    assert extractor.row({"resourceType": "Patient", "active": True}, narrative=True) is None


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("hjärtsvikt", "'hjartsvikt'"),
        ("Hjärtsvikt Ödem", "'hjartsvikt' & 'odem'"),
        ("bone OR liver", "'bone' | 'liver'"),
        ("(bone OR liver) and metastases", "('bone' | 'liver') & 'metastases'"),
        ("a b or c", "'a' & 'b' | 'c'"),
        ("hjärt*", "'hjart':*"),
        ('"heart failure" acute', "('heart' & 'failure') & 'acute'"),
        ("covid-19", "('covid' & '19')"),
        ("bone - liver!", "'bone' & 'liver'"),
        ("covid-19*", "('covid' & '19':*)"),
        ("x" * 200, f"'{'x' * text.MAX_WORD}'"),
    ],
)
def test_a_search_value_is_words_with_and_or_parentheses_prefixes_and_phrases(
    value: str, expected: str
) -> None:
    assert text.tsquery("_text", value) == expected


@pytest.mark.parametrize(
    "written",
    [
        "x½",
        "O\u0308stersund",
        "Straße",
        "ﬁle",
        "a™b",
        "Ærø",
        "İstanbul",
        "åäö-ÅÄÖ",
        "日本語",
        "naïve café",
    ],
)
def test_a_text_searched_for_as_written_finds_itself(written: str) -> None:
    assert set(text.split(written)) == set(text.words([written]))
    query = text.tsquery("_text", written)
    assert set(query.replace("(", "").replace(")", "").replace("'", "").split(" & ")) <= set(
        text.words([written])
    )


@pytest.mark.parametrize(
    "value", ["", "   ", "!!", "and", "(bone", "bone)", "bone OR", "OR bone", "()", '"bone', '""']
)
def test_an_empty_or_malformed_search_value_is_a_bad_request_naming_the_parameter(
    value: str,
) -> None:
    with pytest.raises(FhirError) as caught:
        text.search("_content", None, value, Args())
    assert caught.value.status == 400
    assert caught.value.issues[0].expression == ("_content",)


@pytest.mark.parametrize(("modifier", "value"), [("exact", "a"), ("contains", "a"), ("not", "a")])
def test_modifiers_other_than_missing_are_bad_requests(modifier: str, value: str) -> None:
    with pytest.raises(FhirError) as caught:
        text.search("_text", modifier, value, Args())
    assert caught.value.status == 400
    assert "_text" in caught.value.issues[0].diagnostics


def test_missing_takes_true_or_false() -> None:
    with pytest.raises(FhirError):
        text.search("_text", "missing", "yes", Args())


class TextIndex:
    """Writes resources with their `search_text` row as the indexer's statement does, and runs
    the predicate as `SELECT r.id FROM resource r WHERE …`."""

    def __init__(self, conn: asyncpg.Connection, extractor: text.Extractor) -> None:
        self.conn, self.extractor = conn, extractor

    async def add(self, id: str, resource: dict[str, Any]) -> None:
        pk = await self.conn.fetchval(
            """INSERT INTO resource (resource_type, id, version, last_updated)
               VALUES ('Observation', $1, 1, now()) RETURNING pk""",
            id,
        )
        words = self.extractor.row({"resourceType": "Observation", **resource}, narrative=True)
        statement = insert_statement(pk, "Observation", IndexRows({}, [], words))
        if statement is not None:
            await self.conn.execute(statement[0], *statement[1])

    async def ids(self, param: str, raw: str, modifier: str | None = None) -> set[str]:
        args = Args("Observation")
        where = text.search(param, modifier, raw, args)
        sql = f"SELECT r.id FROM resource r WHERE r.resource_type = $1 AND {where}"
        return {row["id"] for row in await self.conn.fetch(sql, *args.values)}


@pytest.fixture
async def index(conn: asyncpg.Connection, extractor: text.Extractor) -> TextIndex:
    await conn.execute("TRUNCATE resource, search_text CASCADE")
    index = TextIndex(conn, extractor)
    await index.add(
        "heart",
        {
            "text": narrative("<p>Hjärtsvikt med ödem i <b>Östersund</b></p>"),
            "note": [{"text": "Remiss till Umeå"}],
        },
    )
    await index.add("bone", {"text": narrative("<p>Metastases in bone</p>")})
    await index.add("liver", {"text": narrative("<p>Liver metastases</p>")})
    await index.add("bare", {"note": [{"text": "Östersund utan berättelse"}]})
    await index.add("nothing", {})
    return index


async def test_text_finds_a_word_of_the_narrative_regardless_of_case_and_accents(
    index: TextIndex,
) -> None:
    assert await index.ids("_text", "ostersund") == {"heart"}
    assert await index.ids("_text", "ÖSTERSUND") == {"heart"}
    assert await index.ids("_text", "Hjärtsvikt") == {"heart"}


async def test_text_searches_the_narrative_only_and_content_the_whole_resource(
    index: TextIndex,
) -> None:
    assert await index.ids("_text", "umea") == set()
    assert await index.ids("_content", "umea") == {"heart"}
    assert await index.ids("_content", "östersund") == {"heart", "bare"}


async def test_every_word_must_match_unless_joined_by_or(index: TextIndex) -> None:
    assert await index.ids("_text", "metastases bone") == {"bone"}
    assert await index.ids("_text", "metastases hjärtsvikt") == set()
    assert await index.ids("_text", "(bone OR liver) and metastases") == {"bone", "liver"}
    assert await index.ids("_text", "bone or hjärtsvikt") == {"bone", "heart"}


async def test_comma_separated_values_are_alternatives(index: TextIndex) -> None:
    assert await index.ids("_text", "bone,hjärtsvikt ödem") == {"bone", "heart"}


async def test_a_final_star_matches_a_word_prefix(index: TextIndex) -> None:
    assert await index.ids("_text", "hjärt*") == {"heart"}
    assert await index.ids("_text", "hjärt") == set()
    assert await index.ids("_text", "meta*") == {"bone", "liver"}


async def test_missing_finds_resources_without_narrative_or_without_any_text(
    index: TextIndex,
) -> None:
    assert await index.ids("_text", "true", "missing") == {"bare", "nothing"}
    assert await index.ids("_text", "false", "missing") == {"heart", "bone", "liver"}
    assert await index.ids("_content", "true", "missing") == {"nothing"}
