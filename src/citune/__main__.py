from citune.cli import main

main()
