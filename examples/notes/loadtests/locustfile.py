"""A visitor of the notes app, written as any Locust user: reads the list, opens a note now and
then, and sometimes adds one. flaskbench drives it through the staircase like its own users."""

from __future__ import annotations

import random

from locust import FastHttpUser, task


class Visitor(FastHttpUser):
    @task(6)
    def latest(self) -> None:
        self.client.get("/")

    @task(3)
    def one_note(self) -> None:
        self.client.get(f"/notes/{random.randint(1, 3)}", name="/notes/[id]")

    @task(1)
    def add_note(self) -> None:
        with self.client.post(
            "/notes",
            data={"title": "from a visitor", "body": "hello"},
            allow_redirects=False,
            catch_response=True,
        ) as response:
            if response.status_code != 303:
                response.failure(f"expected 303, got {response.status_code}")
