"""Words Microsoft's parser (Kusto.Language) does not take as a bare column name in a row
schema: `datatable(...)`, `externaldata(...)`, a tabular parameter's `(...)` type.  There
they must be written `['date']`.  Measured with tests/oracle over every keyword
Kusto.Language lists (type names, chart kinds, query and management keywords ...): these
are the ones it rejects in all three schemas; the others it takes bare (`where:string`).
tests/test_kql_microsoft_forms.py checks the list against the oracle both ways.
"""

from __future__ import annotations

SCHEMA_KEYWORDS = frozenset("""
    FALSE False TRUE True __contextual_datatable __executeAndCache anomalychart areachart asc
    bagexpansion barchart between boolean byte cachingpolicy callout cancel card char columnchart
    contains_cs containscs cycles dataexport datascope date datetime decimal decodeblocks desc
    double dynamic encodingpolicy endswith endswith_cs expandoutput extent_tags_retention
    external_data false first flags float force_remote harddelete hardretention has_all has_any
    has_cs hasprefix hasprefix_cs hassuffix hassuffix_cs hotcache int int32 isfuzzy journal kind
    ladderchart last like likecs linechart long missing nooptimization notcontains notcontainscs
    notlike notlikecs others pathformat piechart pivotchart project queries query_results real
    relaxed restricted_view_access row_level_security rowstore rowstore_references rowstore_sealinfo
    rowstorepolicy rowstores scatterchart seal seals shards simple softdelete softretention
    stackedareachart startswith startswith_cs statistics storedqueryresultcontainers string
    tablepurge time timechart timeline timepivot timespan treemap true uint ulong union uniqueid
    unrestrictedviewers views with_itemindex with_match_id with_step_name withsource writeaheadlog
""".split())
