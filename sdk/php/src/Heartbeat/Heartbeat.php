<?php

declare(strict_types=1);

namespace Autoheal\Sdk\Heartbeat;

use Autoheal\Sdk\Http\Client;
use Autoheal\Sdk\Journal\Journal;
use Autoheal\Sdk\Version;

/**
 * Builds and sends `POST /api/v1/plugins/heartbeat` (sdk/schemas/heartbeat.json) and
 * remembers the installation id it answers, in memory and in the journal: command
 * verification (check 10) needs it, also in a process that has not sent a heartbeat yet.
 */
final class Heartbeat
{
    private Client $client;
    private PluginInfo $plugin;
    private ?StateCollector $state;
    private ?Journal $journal;
    /** @var callable(): float|null */
    private $errorRate;
    /** @var callable(): array<string, mixed>|null */
    private $serverInfo;
    private ?string $installationId = null;

    /**
     * @param callable(): float|null $errorRate percent of the last hour's operations that failed
     * @param callable(): array<string, mixed>|null $serverInfo added to the default server_info
     */
    public function __construct(Client $client, PluginInfo $plugin, ?StateCollector $state = null, ?Journal $journal = null, ?callable $errorRate = null, ?callable $serverInfo = null)
    {
        $this->client = $client;
        $this->plugin = $plugin;
        $this->state = $state;
        $this->journal = $journal;
        $this->errorRate = $errorRate;
        $this->serverInfo = $serverInfo;
    }

    public function send(): HeartbeatResult
    {
        // Idempotent upsert on the server: safe to retry.
        $result = HeartbeatResult::parse($this->client->post('api/v1/plugins/heartbeat', $this->body(), true));
        $this->installationId = $result->installationId();
        if ($this->journal !== null) {
            $this->journal->rememberInstallationId($this->installationId);
        }
        return $result;
    }

    /** The install's id: from the last answer, else as the journal remembers it. */
    public function installationId(): ?string
    {
        if ($this->installationId === null && $this->journal !== null) {
            $this->installationId = $this->journal->installationId();
        }
        return $this->installationId;
    }

    /** @return array<string, mixed> */
    public function body(): array
    {
        $body = [
            'cms' => $this->plugin->cms(),
            'plugin_version' => $this->plugin->pluginVersion(),
            'sdk_language' => 'php',
            'site_url' => $this->plugin->siteUrl(),
            'environment' => $this->plugin->environment(),
            'php_version' => PHP_VERSION,
            'server_info' => (object) array_merge($this->defaultServerInfo(), $this->serverInfo !== null ? ($this->serverInfo)() : []),
        ];
        if ($this->plugin->merchantId() !== null) {
            $body['merchant_id'] = $this->plugin->merchantId();
        }
        if ($this->plugin->platformVersion() !== null) {
            $body['wordpress_version'] = $this->plugin->platformVersion();
        }
        if ($this->errorRate !== null) {
            $rate = ($this->errorRate)();
            $body['errors_last_hour'] = is_finite($rate) && $rate >= 0 ? $rate : 0.0;
        }
        if ($this->state !== null) {
            $body['state'] = (object) $this->state->collect();
        }
        return $body;
    }

    /** @return array<string, scalar> */
    private function defaultServerInfo(): array
    {
        return [
            'memory_limit' => (string) ini_get('memory_limit'),
            'max_execution_time' => (int) ini_get('max_execution_time'),
            'php_sapi' => PHP_SAPI,
            'os_family' => PHP_OS_FAMILY,
            'autoheal_sdk_version' => Version::SDK,
        ];
    }
}
