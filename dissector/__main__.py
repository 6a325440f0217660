from dissector.cli.main import main

main()
