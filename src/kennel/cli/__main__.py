from kennel.cli.main import main

main()
