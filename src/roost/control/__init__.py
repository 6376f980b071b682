"""The control socket: its protocol, the server inside roost, and the client."""
