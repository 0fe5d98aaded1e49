# Scripts run in subprocesses of their own (one of them is a pytest suite).
collect_ignore = ["scripts"]
