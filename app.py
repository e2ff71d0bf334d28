"""Start the server: index seeds/ if there is no index yet, load the model once, then serve the chat UI,
the HTTP API and the widget on http://127.0.0.1:7860/ (settings `host` and `port`, or --host/--port).
"""

import sys

from rag.serving.app import main

if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
