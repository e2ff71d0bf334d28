"""Start the assistant: index seeds/ if there is no index yet, then answer questions in the terminal.

Questions given as arguments are answered in turn as one conversation; with none, it asks interactively.
"""

import sys

from rag.cli import main

if __name__ == "__main__":
    sys.exit(main(["ask", "--conversation", *sys.argv[1:]]))
