"""Everything that runs inside the target's interpreter, under one name no app uses: the launcher
that supervises a server and samples the gauge, the loader every server serves (appload), the
gauge, the built-in app and the servers' entry points. Imported by this name from a directory that
comes after the app's on the import path, so no module of the harness can shadow one of the
app's."""
