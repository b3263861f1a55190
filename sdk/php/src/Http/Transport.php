<?php

declare(strict_types=1);

namespace Autoheal\Sdk\Http;

/**
 * One HTTP exchange. An implementation never follows redirects (the merchant key must not
 * be sent to wherever a redirect points), never retries (the Client does), answers every
 * status it receives as a Response, and throws TransportException only when no answer came
 * (DNS, connection, TLS, timeout, an answer larger than its limit).
 */
interface Transport
{
    /**
     * @param array<string, string> $headers
     * @throws TransportException
     */
    public function request(string $method, string $url, array $headers, ?string $body): Response;
}
