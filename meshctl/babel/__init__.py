"""babeld local-interface client: a sans-I/O parser and protocol, and a thin
asyncio connection.  See ``meshctl.babel.parser`` for the line formats."""

from meshctl.babel.endpoint import Endpoint, parse_endpoint
from meshctl.babel.errors import BabelConnectionError, BabelError, CommandError, ParseError
from meshctl.babel.parser import parse_line
from meshctl.babel.protocol import BabelProtocol

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
