"""The servers flaskbench measures Flask under: their settings, command lines and models."""
