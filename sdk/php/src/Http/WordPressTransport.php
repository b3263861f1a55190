<?php

declare(strict_types=1);

namespace Autoheal\Sdk\Http;

/**
 * WordPress's HTTP API (wp_remote_*), so the site's proxy settings, CA bundle and
 * `http_request_args` filters apply as for any other plugin request.
 */
final class WordPressTransport implements Transport
{
    private TransportOptions $options;

    public function __construct(?TransportOptions $options = null)
    {
        if (!function_exists('wp_remote_request')) {
            throw new \LogicException('WordPressTransport runs inside WordPress only');
        }
        $this->options = $options ?? new TransportOptions();
    }

    public function request(string $method, string $url, array $headers, ?string $body): Response
    {
        TransportOptions::checkRequest($method, $url, $headers);
        $max = $this->options->maxResponseBytes();
        $args = [
            'method' => $method,
            'headers' => $headers,
            'timeout' => $this->options->timeout(),
            'redirection' => 0,
            'sslverify' => true,
            // WordPress cuts an answer at the limit without saying so: ask for one byte more
            // than allowed, so a cut answer is recognised and refused.
            'limit_response_size' => $max + 1,
        ];
        if ($body !== null) {
            $args['body'] = $body;
        }
        if ($method === 'GET') {
            $raw = wp_remote_get($url, $args);
        } elseif ($method === 'POST') {
            $raw = wp_remote_post($url, $args);
        } else {
            $raw = wp_remote_request($url, $args);
        }
        if (is_wp_error($raw)) {
            throw new TransportException($method . ' ' . $url . ': ' . $raw->get_error_message());
        }
        $status = wp_remote_retrieve_response_code($raw);
        if (!is_int($status) || $status < 100) {
            throw new TransportException($method . ' ' . $url . ': answer without an HTTP status');
        }
        $bodyText = (string) wp_remote_retrieve_body($raw);
        if (strlen($bodyText) > $max) {
            throw new TransportException($method . ' ' . $url . ': answer larger than ' . $max . ' bytes');
        }
        return new Response($status, self::headers(wp_remote_retrieve_headers($raw)), $bodyText);
    }

    /**
     * WordPress answers an array or a case-insensitive dictionary object (Requests), whose
     * repeated headers are arrays.
     *
     * @param iterable<string, string|list<string>>|mixed $raw
     * @return array<string, string>
     */
    private static function headers($raw): array
    {
        $headers = [];
        if (!is_iterable($raw)) {
            return $headers;
        }
        foreach ($raw as $name => $value) {
            $headers[strtolower((string) $name)] = is_array($value) ? implode(', ', $value) : (string) $value;
        }
        return $headers;
    }
}
