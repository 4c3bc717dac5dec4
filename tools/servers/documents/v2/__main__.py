"""Run the server: ``python -m tools.servers.documents.v2``."""

from tools.servers.common import serve
from tools.servers.documents.v2.server import server

serve(server)
