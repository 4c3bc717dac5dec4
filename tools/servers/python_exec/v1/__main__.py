"""Run the server: ``python -m tools.servers.python_exec.v1``."""

from tools.servers.common import serve
from tools.servers.python_exec.v1.server import server

serve(server)
