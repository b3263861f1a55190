<?php

declare(strict_types=1);

namespace Autoheal\Sdk\Heartbeat;

use Autoheal\Sdk\Support\Text;

/**
 * Who the plugin is, as every heartbeat and event says it. (merchant, cms, site_url)
 * identifies the installation on the server.
 */
final class PluginInfo
{
    public const CMS = ['woocommerce', 'prestashop', 'shopify', 'magento', 'generic'];
    public const ENVIRONMENTS = ['production', 'staging', 'development', 'test'];

    private string $cms;
    private string $pluginVersion;
    private string $siteUrl;
    private string $environment;
    private ?string $platformVersion;
    private ?string $merchantId;

    public function __construct(string $cms, string $pluginVersion, string $siteUrl, string $environment = 'production', ?string $platformVersion = null, ?string $merchantId = null)
    {
        if (!in_array($cms, self::CMS, true)) {
            throw new \InvalidArgumentException('cms must be one of ' . implode(', ', self::CMS));
        }
        if (strlen($pluginVersion) > 64 || preg_match('/^v?[0-9]+\.[0-9]+\.[0-9]+([-+].*)?$/D', $pluginVersion) !== 1) {
            throw new \InvalidArgumentException('plugin_version must be a semantic version');
        }
        if (strlen($siteUrl) > 2048 || ($siteUrl !== '' && !Text::startsWith($siteUrl, 'http://') && !Text::startsWith($siteUrl, 'https://'))) {
            throw new \InvalidArgumentException('site_url must be an http(s) URL of at most 2048 characters');
        }
        if (!in_array($environment, self::ENVIRONMENTS, true)) {
            throw new \InvalidArgumentException('environment must be one of ' . implode(', ', self::ENVIRONMENTS));
        }
        $this->cms = $cms;
        $this->pluginVersion = $pluginVersion;
        $this->siteUrl = $siteUrl;
        $this->environment = $environment;
        $this->platformVersion = $platformVersion;
        $this->merchantId = $merchantId;
    }

    public function cms(): string
    {
        return $this->cms;
    }

    public function pluginVersion(): string
    {
        return $this->pluginVersion;
    }

    public function siteUrl(): string
    {
        return $this->siteUrl;
    }

    public function environment(): string
    {
        return $this->environment;
    }

    /** The CMS's own version (WordPress's for WooCommerce), sent as wordpress_version. */
    public function platformVersion(): ?string
    {
        return $this->platformVersion;
    }

    public function merchantId(): ?string
    {
        return $this->merchantId;
    }
}
