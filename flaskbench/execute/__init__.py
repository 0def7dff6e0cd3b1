"""Running a plan: the runners that start targets and Locust, and what they need."""
