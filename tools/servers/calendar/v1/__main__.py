"""Run the server: ``python -m tools.servers.calendar.v1``."""

from tools.servers.calendar.v1.server import server
from tools.servers.common import serve

serve(server)
