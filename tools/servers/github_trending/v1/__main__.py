"""Run the server: ``python -m tools.servers.github_trending.v1``."""

from tools.servers.common import serve
from tools.servers.github_trending.v1.server import server

serve(server)
