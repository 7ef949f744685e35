"""The Splunk SPL backend: `backend` writes the search, `expr` eval expressions, `stages` the
stages after it, `multi` unions and joins, `tstats` the accelerated data-model form."""
