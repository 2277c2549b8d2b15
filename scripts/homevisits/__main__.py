"""python -m homevisits"""

from .cli import command

command()
