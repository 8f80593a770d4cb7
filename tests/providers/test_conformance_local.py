from tests.providers.conformance import ProviderConformance


class TestLocalConformance(ProviderConformance):
    provider_name = "local"
