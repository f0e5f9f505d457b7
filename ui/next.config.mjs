/** Static export into out/, served by vessel-serve at "/" from the same origin as the API. */
const nextConfig = {
  output: "export",
  images: { unoptimized: true },
  trailingSlash: true, // Starlette's StaticFiles serves dir/index.html
  reactStrictMode: true,
  poweredByHeader: false,
};

export default nextConfig;
