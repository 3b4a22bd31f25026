"""``golf-check --pull-requests``: audit a whole backlog of submission pull requests from the
git objects of a clone, without checking anything out (see ``backlog.py``)."""
