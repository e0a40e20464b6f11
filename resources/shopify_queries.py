"""The Shopify documents the project sends: shopify.md §5's queries, exactly as the contract writes them
(each validates against the Admin schema with 0 errors and uses no deprecated field)."""

ORDERS_QUERY = """
query OrdersIncremental($first: Int!, $after: String, $query: String!, $lists: Int = 5) {
  orders(first: $first, after: $after, query: $query, sortKey: UPDATED_AT) {
    pageInfo { hasNextPage endCursor }
    nodes {
      id name createdAt updatedAt processedAt closedAt cancelledAt cancelReason test tags
      displayFinancialStatus displayFulfillmentStatus returnStatus
      customer { id displayName tags numberOfOrders amountSpent { amount currencyCode } }
      totalPriceSet { shopMoney { amount currencyCode } presentmentMoney { amount currencyCode } }
      currentTotalPriceSet { shopMoney { amount currencyCode } }
      totalRefundedSet { shopMoney { amount currencyCode } }
      totalOutstandingSet { shopMoney { amount currencyCode } }
      risk { recommendation assessments { riskLevel provider { title } facts { description sentiment } } }
      fulfillments(first: $lists) {
        id name status displayStatus createdAt updatedAt inTransitAt deliveredAt estimatedDeliveryAt
        trackingInfo(first: 1) { company number url }
      }
      transactions(first: $lists) {
        id kind status errorCode gateway createdAt processedAt test
        amountSet { shopMoney { amount currencyCode } }
      }
      refunds(first: $lists) { id createdAt note totalRefundedSet { shopMoney { amount currencyCode } } }
      returns(first: $lists) { nodes { id name status createdAt closedAt totalQuantity decline { reason note } } }
    }
  }
}"""
EVENTS_QUERY = """
query FulfillmentEvents($id: ID!, $first: Int!, $after: String) {
  fulfillment(id: $id) {
    id displayStatus updatedAt
    events(first: $first, after: $after, sortKey: HAPPENED_AT) {
      pageInfo { hasNextPage endCursor }
      nodes { id status happenedAt createdAt message city province country zip estimatedDeliveryAt }
    }
  }
}"""
CHECKOUTS_QUERY = """
query AbandonedCheckouts($first: Int!, $after: String, $query: String!) {
  abandonedCheckouts(first: $first, after: $after, query: $query, sortKey: ID) {
    pageInfo { hasNextPage endCursor }
    nodes {
      id name createdAt updatedAt completedAt abandonedCheckoutUrl discountCodes
      totalPriceSet { shopMoney { amount currencyCode } }
      customer { id displayName tags defaultEmailAddress { emailAddress } }
      lineItems(first: 5) { nodes { id title variantTitle sku quantity } }
    }
  }
}"""
LOCATIONS_QUERY = """
query Locations($first: Int!, $after: String) {
  locations(first: $first, after: $after) {
    pageInfo { hasNextPage endCursor }
    nodes { id name isActive }
  }
}"""
LEVELS_QUERY = """
query InventoryLevels($locationId: ID!, $first: Int!, $after: String, $query: String) {
  location(id: $locationId) {
    id
    inventoryLevels(first: $first, after: $after, query: $query) {
      pageInfo { hasNextPage endCursor }
      nodes {
        id updatedAt
        item { id sku tracked variants(first: 1) { nodes { id displayName } } }
        quantities(names: ["available"]) { name quantity updatedAt }
      }
    }
  }
}"""
