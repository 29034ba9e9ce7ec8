// Starts the vendored Swagger UI on /api/docs; a static file because the CSP allows no inline script.
window.addEventListener("DOMContentLoaded", function () {
  var root = document.getElementById("swagger-ui");
  window.SwaggerUIBundle({
    url: root.dataset.spec,
    domNode: root,
    deepLinking: true,
    // "Try it out" calls the API from this page: same origin, the session cookie, and the CSRF token
    requestInterceptor: function (request) {
      request.headers["X-CSRF-Token"] = root.dataset.csrf;
      return request;
    },
  });
});
