from flode.cli import main

main()
