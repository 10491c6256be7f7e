"""The stream's contract check: a Spark UDF in Java (``ContractCheck.java`` beside this module).

It reads every message's bytes once and returns where the message goes: (table, partition value,
line), the line a CSV row of the latest contract for an event that keeps its topic's contract, or
a JSON line with the first rule it breaks for the quarantine. The contracts themselves come from
:func:`smartcity.fleet.contracts.check_spec`: Python stays the one source.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from smartcity.fleet import contracts
from smartcity.platform import jvm

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

SOURCE = Path(__file__).with_name("ContractCheck.java")
#: The check's name in Spark SQL.
FUNCTION = "smartcity_contract_violation"


def jar() -> Path:
    """The check compiled against pyspark's jars (once; cached in .cache/jvm/): what a session needs on spark.jars."""
    return jvm.udf_jar(SOURCE)


def register(spark: SparkSession) -> None:
    """The check under its SQL name, holding the contracts: once per session (the stream asks when it starts;
    the first registration's instance then serves every query, warm-up and drains alike, as it did
    when the session registered it on start).

    Registered as non-deterministic so that Spark calls it once per message even where three
    columns read its result.
    """
    if spark.catalog.functionExists(FUNCTION):
        return
    function = spark._jvm.smartcity.ContractCheck.function(contracts.check_spec())
    spark._jsparkSession.udf().register(FUNCTION, function)
