"""The app's own module named like one of the harness's (gauge): the app must get this
one, and the harness its own."""

OWNER = "shadow"
