<?php

declare(strict_types=1);

namespace Autoheal\Sdk\Agent;

use Autoheal\Sdk\Apply\Notifier;
use Autoheal\Sdk\Apply\OperationApplier;
use Autoheal\Sdk\Config\ConfigStore;
use Autoheal\Sdk\Config\PdoConfigStore;
use Autoheal\Sdk\Database\TableSelection;
use Autoheal\Sdk\Events\TelemetryEvents;
use Autoheal\Sdk\Heartbeat\Heartbeat;
use Autoheal\Sdk\Heartbeat\PluginInfo;
use Autoheal\Sdk\Heartbeat\StateCollector;
use Autoheal\Sdk\Http\Client;
use Autoheal\Sdk\Http\RetryPolicy;
use Autoheal\Sdk\Http\Sleeper;
use Autoheal\Sdk\Http\StreamTransport;
use Autoheal\Sdk\Http\Transport;
use Autoheal\Sdk\Journal\FileJournal;
use Autoheal\Sdk\Journal\Journal;
use Autoheal\Sdk\Journal\PdoJournal;
use Autoheal\Sdk\Log\Logger;
use Autoheal\Sdk\Log\NullLogger;
use Autoheal\Sdk\Time\Clock;
use Autoheal\Sdk\Time\SystemClock;
use Autoheal\Sdk\Verify\CommandVerifier;
use Autoheal\Sdk\Verify\TrustedRoots;

/**
 * Wires an Agent from what a plugin knows: the server, its key, who it is, its database and
 * tables, its configuration, the trusted root keys and where to keep the journal.
 * Required: plugin(), shopDatabase(), trustedRoots() or trustedRootFiles(). Defaults:
 * StreamTransport, the journal and config tables in the shop's database, no logging.
 */
final class AgentBuilder
{
    private string $baseUrl;
    private string $merchantKey;
    private ?PluginInfo $plugin = null;
    private ?Transport $transport = null;
    private ?\PDO $pdo = null;
    private ?TableSelection $tables = null;
    private ?ConfigStore $config = null;
    private ?TrustedRoots $roots = null;
    private ?Journal $journal = null;
    private ?Notifier $notifier = null;
    private ?Logger $logger = null;
    private ?Clock $clock = null;
    private ?RetryPolicy $retry = null;
    private ?Sleeper $sleeper = null;
    /** @var callable|null */
    private $facts = null;
    /** @var callable|null */
    private $errorRate = null;
    /** @var callable|null */
    private $serverInfo = null;

    private function __construct(
        string $baseUrl,
        #[\SensitiveParameter]
        string $merchantKey
    ) {
        $this->baseUrl = $baseUrl;
        $this->merchantKey = $merchantKey;
    }

    public static function create(
        string $baseUrl,
        #[\SensitiveParameter]
        string $merchantKey
    ): self {
        return new self($baseUrl, $merchantKey);
    }

    public function plugin(PluginInfo $plugin): self
    {
        $this->plugin = $plugin;
        return $this;
    }

    public function transport(Transport $transport): self
    {
        $this->transport = $transport;
        return $this;
    }

    /** The shop's database, where operations apply, and which of its tables are the plugin's. */
    public function shopDatabase(\PDO $pdo, TableSelection $tables): self
    {
        $this->pdo = $pdo;
        $this->tables = $tables;
        return $this;
    }

    public function configStore(ConfigStore $config): self
    {
        $this->config = $config;
        return $this;
    }

    public function trustedRoots(TrustedRoots $roots): self
    {
        $this->roots = $roots;
        return $this;
    }

    /** @param list<string> $paths root public key files (`autoheal.pub`) */
    public function trustedRootFiles(array $paths): self
    {
        $this->roots = TrustedRoots::fromFiles($paths);
        return $this;
    }

    public function journal(Journal $journal): self
    {
        $this->journal = $journal;
        return $this;
    }

    /** The journal as files in $dir (outside the web root). */
    public function fileJournal(string $dir): self
    {
        $this->journal = new FileJournal($dir);
        return $this;
    }

    public function notifier(Notifier $notifier): self
    {
        $this->notifier = $notifier;
        return $this;
    }

    public function logger(Logger $logger): self
    {
        $this->logger = $logger;
        return $this;
    }

    public function clock(Clock $clock): self
    {
        $this->clock = $clock;
        return $this;
    }

    public function retries(RetryPolicy $retry, ?Sleeper $sleeper = null): self
    {
        $this->retry = $retry;
        $this->sleeper = $sleeper;
        return $this;
    }

    /** @param callable(): array<string, mixed> $facts extra state facts rules may read */
    public function facts(callable $facts): self
    {
        $this->facts = $facts;
        return $this;
    }

    /** @param callable(): float $errorRate percent of the last hour's operations that failed */
    public function errorRate(callable $errorRate): self
    {
        $this->errorRate = $errorRate;
        return $this;
    }

    /** @param callable(): array<string, mixed> $serverInfo */
    public function serverInfo(callable $serverInfo): self
    {
        $this->serverInfo = $serverInfo;
        return $this;
    }

    public function build(): Agent
    {
        if ($this->plugin === null || $this->pdo === null || $this->tables === null || $this->roots === null) {
            throw new \LogicException('an agent needs plugin(), shopDatabase() and trusted roots');
        }
        $logger = $this->logger ?? new NullLogger();
        $clock = $this->clock ?? new SystemClock();
        $client = new Client($this->baseUrl, $this->merchantKey, $this->transport ?? new StreamTransport(), $this->retry, $this->sleeper, $logger, $clock);
        $config = $this->config ?? new PdoConfigStore($this->pdo);
        $journal = $this->journal ?? new PdoJournal($this->pdo);
        $state = new StateCollector($this->pdo, $this->tables, $config, $this->facts, $logger);
        $heartbeat = new Heartbeat($client, $this->plugin, $state, $journal, $this->errorRate, $this->serverInfo);
        $applier = new OperationApplier($this->pdo, $config, $this->notifier, $logger);
        $processor = new CommandProcessor(
            $client,
            $journal,
            new CommandVerifier($this->roots, $journal, $clock),
            $applier,
            new Acks($client, $journal, $logger, $this->plugin->pluginVersion()),
            $logger
        );
        return new Agent($client, $heartbeat, $journal, $processor, new TelemetryEvents($client, $this->plugin), $logger);
    }
}
