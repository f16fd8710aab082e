"""Search parameter types: each module holds both index extraction and the SQL predicate."""
