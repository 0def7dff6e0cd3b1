"""App entry point."""

from flask_sqlalchemy_tutorial import create_app

app = create_app()
