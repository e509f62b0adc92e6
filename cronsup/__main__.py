from cronsup.cli import main

main()
