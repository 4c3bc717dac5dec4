"""Run the server: ``python -m tools.servers.documents.v1``."""

from tools.servers.common import serve
from tools.servers.documents.v1.server import server

serve(server)
