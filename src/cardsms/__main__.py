from cardsms.cli import main

main()
