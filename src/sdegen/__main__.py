from sdegen.cli import main

main()
