"""How far flaskbench's own numbers can be trusted on this machine, measured."""
