from tests.providers.conformance import ProviderConformance


class TestAzureConformance(ProviderConformance):
    provider_name = "azure"
