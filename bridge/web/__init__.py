"""The HTTP side operators use: the server, the operators' API, the console and its API,
sign-in, and credential replacement."""
