from preftune.cli.main import main

main()
