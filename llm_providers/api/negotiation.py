"""Content negotiation: DRF's, answered at once for the ``Accept`` and ``Content-Type`` headers
clients send."""

from rest_framework.negotiation import DefaultContentNegotiation


class PlainContentNegotiation(DefaultContentNegotiation):
    """DRF's ``DefaultContentNegotiation``, the API's default (``REST_FRAMEWORK``).

    Nearly every request sends no ``Accept``, ``*/*`` (curl, requests) or exactly the API's
    ``application/json`` (the openai SDK), and asks for no ``?format=``. For those DRF's
    answer is always the first renderer with its own media type; DRF gets there by parsing the
    header into media-type objects and ranking them on every request. Anything else (several
    types, parameters, q-values, a format) goes through DRF unchanged.
    """

    def select_renderer(self, request, renderers, format_suffix=None):
        if renderers and not format_suffix:
            first = renderers[0]
            accept = request.META.get("HTTP_ACCEPT")
            # A media type with parameters ("…; charset=…") does not match */* in DRF.
            if (
                (accept is None or accept == "*/*" or accept == first.media_type)
                and ";" not in first.media_type
                and not self._format_asked(request)
            ):
                return first, first.media_type
        return super().select_renderer(request, renderers, format_suffix)

    def select_parser(self, request, parsers):
        # A Content-Type that is exactly the first parser's media type ("application/json",
        # what clients send): DRF's answer is that parser (it tries them in order).
        if parsers and request.content_type == parsers[0].media_type:
            return parsers[0]
        return super().select_parser(request, parsers)

    def _format_asked(self, request) -> bool:
        param = self.settings.URL_FORMAT_OVERRIDE
        if not param or not request.META.get("QUERY_STRING"):
            return False
        return bool(request.query_params.get(param))
