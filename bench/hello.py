"""The ceiling: a hello-world Flask app, served exactly like Yitong (gunicorn, one sync worker)."""

from flask import Flask

app = Flask(__name__)


@app.get("/")
def hello() -> str:
    return "Hello, World!"
