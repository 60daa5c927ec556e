"""Model cards rendered from plain stage records (jinja2 template in ``templates/``)."""
