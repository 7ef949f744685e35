"""The ES|QL backend: `backend` writes the query, `expr` expressions, `regex` Java regexes,
`stages` the stages, `text` literals and names, `union` one FROM over several sources."""
