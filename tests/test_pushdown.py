"""rmmc.compiler.pushdown: filters moved into the detection mean the same rule."""

from __future__ import annotations

import rmmc
from rmmc.compiler import ir
from rmmc.compiler.pushdown import push_filters


def test_a_column_no_raw_condition_can_say_keeps_its_filter_in_place():
    # iff(x in (subquery), ...) of a computed x cannot be written over the raw event (a
    # subquery tests a column): the filter that reads
    # the column stays after the extend (it used to escape as an internal error in every
    # backend), the filter that does not moves into the detection
    rule = rmmc.lower_text("""DeviceNetworkEvents
        | extend L = tolower(DeviceName)
        | extend Flag = iff(L in ((DeviceInfo | project DeviceName)), 1, 0)
        | where Flag == 1 and RemotePort == 445""").rule
    pushed = push_filters(rule)
    assert [type(s).__name__ for s in pushed.stages] == ["Extend", "Extend", "Filter"]
    assert pushed.stages[2].condition == ir.Predicate(ir.Field("Flag", "long"), ir.Op.EQUALS, (1,),
                                                      case_sensitive=True)
    assert pushed.condition == ir.Predicate(ir.Field("RemotePort", "int"), ir.Op.EQUALS, (445,),
                                            case_sensitive=True)
