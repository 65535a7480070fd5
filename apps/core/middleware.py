"""Middleware of the whole site."""

from django.http import JsonResponse

# Clients of these paths read JSON, whatever went wrong and wherever.
JSON_PREFIXES = ("/api/", "/call-control/")


def speaks_json(request) -> bool:
    return request.path.startswith(JSON_PREFIXES)


class JsonNotFoundMiddleware:
    """Answer a path no view knows under the JSON prefixes with a JSON 404, DEBUG or not.

    smartswitch.urls' handler404 does it in production; with DEBUG on (the `make run`
    default) Django renders its technical HTML page instead, and an integrator trying the
    API on a demo would parse HTML. Outermost, so that CommonMiddleware's trailing-slash
    redirect has already had its chance.
    """

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        response = self.get_response(request)
        if (
            response.status_code == 404
            and speaks_json(request)
            and not response.get("Content-Type", "").startswith("application/json")
        ):
            return JsonResponse({"detail": "Not found."}, status=404)
        return response
