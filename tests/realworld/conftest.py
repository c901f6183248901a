# The real-world runner (run.py, projects.py) is a script, not tests.
collect_ignore_glob = ["*.py"]
