"""Run the server: ``python -m tools.servers.github_trending.v2``."""

from tools.servers.common import serve
from tools.servers.github_trending.v2.server import server

serve(server)
