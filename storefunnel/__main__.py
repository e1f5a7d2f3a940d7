from storefunnel.cli import main

main()
