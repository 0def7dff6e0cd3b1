from locust import FastHttpUser, between, task


class Visitor(FastHttpUser):
    wait_time = between(0.005, 0.01)

    @task
    def browse(self) -> None:
        self.client.get("/slow")
