<?php

declare(strict_types=1);

namespace Autoheal\Sdk\Events;

use Autoheal\Sdk\Heartbeat\PluginInfo;
use Autoheal\Sdk\Http\Client;
use Autoheal\Sdk\Support\Text;
use Autoheal\Sdk\Time\Instant;

/**
 * `POST /api/v1/plugins/event`: payment outcomes and errors, the error rate Ops see and
 * the post-apply regression analysis reads. The server redacts card numbers, secrets and
 * tokens; do not rely on it — leave them out. Not retried on 5xx: the server may have
 * stored it, and an event has no id to deduplicate by.
 */
final class TelemetryEvents
{
    public const TYPES = ['payment_success', 'payment_failed', 'error', 'warning', 'info'];
    public const SEVERITIES = ['debug', 'info', 'warning', 'error', 'critical'];

    private Client $client;
    private PluginInfo $plugin;

    public function __construct(Client $client, PluginInfo $plugin)
    {
        $this->client = $client;
        $this->plugin = $plugin;
    }

    /** @param array<string, mixed> $eventData */
    public function send(string $eventType, array $eventData = [], ?string $message = null, ?string $severity = null, ?string $stackTrace = null, ?Instant $occurredAt = null): EventResult
    {
        if (!in_array($eventType, self::TYPES, true)) {
            throw new \InvalidArgumentException('event_type must be one of ' . implode(', ', self::TYPES));
        }
        if ($severity !== null && !in_array($severity, self::SEVERITIES, true)) {
            throw new \InvalidArgumentException('severity must be one of ' . implode(', ', self::SEVERITIES));
        }
        $body = [
            'cms' => $this->plugin->cms(),
            'event_type' => $eventType,
            'event_data' => (object) $eventData,
            'site_url' => $this->plugin->siteUrl(),
        ];
        if ($severity !== null) {
            $body['severity'] = $severity;
        }
        if ($message !== null) {
            $body['message'] = Text::truncate($message, 10000);
        }
        if ($stackTrace !== null) {
            $body['stack_trace'] = Text::truncate($stackTrace, 50000);
        }
        if ($occurredAt !== null) {
            $body['occurred_at'] = $occurredAt->format();
        }
        return EventResult::parse($this->client->post('api/v1/plugins/event', $body, false));
    }

    /** @param array<string, mixed> $eventData */
    public function paymentSucceeded(array $eventData = []): EventResult
    {
        return $this->send('payment_success', $eventData);
    }

    /** @param array<string, mixed> $eventData */
    public function paymentFailed(string $message, array $eventData = []): EventResult
    {
        return $this->send('payment_failed', $eventData, $message);
    }

    public function error(\Throwable $e, string $severity = 'error'): EventResult
    {
        return $this->send('error', ['exception' => get_class($e)], $e->getMessage(), $severity, $e->getTraceAsString());
    }
}
