"""`python -m charrnn` runs the command line."""
from .cli import main

main(prog_name="charrnn")
