"""The Azure locations known to llmcloud, to warn of a region name that names none.

Azure offers no offline list of its locations (`az account list-locations` asks Resource
Manager), and it opens new regions often: a name not listed here is only warned of by
`plan`, never refused; `up` is left to Azure, which refuses an unknown location at once.

Names as `az account list-locations` prints them (its `Name` column), as of 2026-12:
Microsoft's "Azure regions list" (learn.microsoft.com/azure/reliability/regions-list, the
programmatic names, with the regions opened since 2024: austriaeast, belgiumcentral,
chilecentral, indonesiacentral, malaysiawest, newzealandnorth), the well-known locations of
the Azure SDK for .NET (Azure/azure-sdk-for-net, sdk/core/Azure.Core/src/AzureLocation.cs:
the public regions, Azure US Government's and Azure operated by 21Vianet's), and the early
access (EUAP) regions that list-locations shows; and the regions Microsoft Fabric's region
availability table names that those lack (learn.microsoft.com/fabric/admin/region-availability,
2026-10: denmarkeast, taiwannorth, taiwannorthwest). Retired ones are left out: the German
cloud's germanycentral and germanynortheast (closed 2021), usgoviowa.
"""

from __future__ import annotations

import difflib

PUBLIC = frozenset({
    "australiacentral", "australiacentral2", "australiaeast", "australiasoutheast",
    "austriaeast", "belgiumcentral", "brazilsouth", "brazilsoutheast", "canadacentral",
    "canadaeast", "centralindia", "centralus", "centraluseuap", "chilecentral",
    "denmarkeast", "eastasia", "eastus", "eastus2", "eastus2euap", "francecentral",
    "francesouth", "germanynorth", "germanywestcentral", "indonesiacentral",
    "israelcentral", "italynorth", "japaneast", "japanwest", "jioindiacentral",
    "jioindiawest", "koreacentral", "koreasouth", "malaysiawest", "mexicocentral",
    "newzealandnorth", "northcentralus", "northeurope", "norwayeast", "norwaywest",
    "polandcentral", "qatarcentral", "southafricanorth", "southafricawest",
    "southcentralus", "southeastasia", "southindia", "spaincentral", "swedencentral",
    "swedensouth", "switzerlandnorth", "switzerlandwest", "taiwannorth", "taiwannorthwest",
    "uaecentral", "uaenorth", "uksouth", "ukwest", "westcentralus", "westeurope",
    "westindia", "westus", "westus2", "westus3",
})
US_GOVERNMENT = frozenset({"usdodcentral", "usdodeast", "usgovarizona", "usgovtexas",
                           "usgovvirginia"})
CHINA = frozenset({"chinaeast", "chinaeast2", "chinaeast3", "chinanorth", "chinanorth2",
                   "chinanorth3"})
#: every location of the public and sovereign clouds known here
KNOWN = PUBLIC | US_GOVERNMENT | CHINA


def nearest_location(name: str) -> str:
    """The known location whose name is closest to `name` (a typo's likely meaning)."""
    return difflib.get_close_matches(name, sorted(KNOWN), n=1, cutoff=0)[0]


def unknown_location_warning(name: str) -> str | None:
    """A warning for a region name that is no Azure location known here, naming the
    nearest; None for a known one."""
    if name in KNOWN:
        return None
    return (f"region {name} is not an Azure location known to llmcloud (the nearest is "
            f"{nearest_location(name)}): `up` fails if Azure has no such location; "
            f"az account list-locations -o table lists them")
