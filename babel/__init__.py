"""babeld local-interface client: a sans-I/O parser and protocol, and a thin
asyncio connection.  See ``babel.parser`` for the line formats."""

from babel.endpoint import Endpoint, parse_endpoint
from babel.errors import BabelConnectionError, BabelError, CommandError, ParseError
from babel.parser import parse_line
from babel.protocol import BabelProtocol

__all__ = [
    "BabelConnectionError",
    "BabelError",
    "BabelProtocol",
    "CommandError",
    "Endpoint",
    "ParseError",
    "parse_endpoint",
    "parse_line",
]
