from enhancer.cli import main

main()
